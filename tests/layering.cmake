# The layering rule of the source folders (issue 21; docs/architecture.md), checked by ctest (layering.includes):
#
#   storage/   includes none of model/, actors/, launch/   (the on-disk formats: torch-free, below everything)
#   messages/  includes none of actors/, model/, launch/   (the wire: below the actors)
#   model/     includes none of actors/, launch/
#   actors/    includes nothing from launch/               (launch/ holds the commands that start actors)
#
# Run: cmake -DHLLM_SOURCE_DIR=<repository root> -P tests/layering.cmake
# Fails (exit 1) listing every offending FILE:LINE and the include, so one run shows everything to fix.
if(NOT HLLM_SOURCE_DIR)
  message(FATAL_ERROR "layering.cmake: give -DHLLM_SOURCE_DIR=<repository root>")
endif()
if(NOT IS_DIRECTORY "${HLLM_SOURCE_DIR}")
  message(FATAL_ERROR "layering.cmake: HLLM_SOURCE_DIR '${HLLM_SOURCE_DIR}' is not a directory")
endif()

# folder -> the folders it must not include from
set(forbidden_storage model actors launch)
set(forbidden_messages actors model launch)
set(forbidden_model actors launch)
set(forbidden_actors launch)

set(offences "")
set(scanned 0)
foreach(folder storage messages model actors)
  string(JOIN "|" banned ${forbidden_${folder}})
  set(pattern "^[ \t]*#[ \t]*include[ \t]*[<\"](${banned})/")
  file(GLOB_RECURSE sources LIST_DIRECTORIES false RELATIVE "${HLLM_SOURCE_DIR}"
       "${HLLM_SOURCE_DIR}/${folder}/*.hpp" "${HLLM_SOURCE_DIR}/${folder}/*.cpp" "${HLLM_SOURCE_DIR}/${folder}/*.h"
       "${HLLM_SOURCE_DIR}/${folder}/*.cu" "${HLLM_SOURCE_DIR}/${folder}/*.cuh" "${HLLM_SOURCE_DIR}/${folder}/*.in")
  list(SORT sources)
  foreach(rel IN LISTS sources)
    math(EXPR scanned "${scanned} + 1")
    # Cheap filter first; only a file with a hit is read line by line (for the line numbers).
    file(STRINGS "${HLLM_SOURCE_DIR}/${rel}" hits REGEX "${pattern}")
    if(NOT hits)
      continue()
    endif()
    file(READ "${HLLM_SOURCE_DIR}/${rel}" text)
    # Characters that CMake lists treat specially become '_' (the include lines matched need none of them).
    string(REPLACE ";" "_" text "${text}")
    string(REPLACE "[" "_" text "${text}")
    string(REPLACE "]" "_" text "${text}")
    string(REPLACE "\\" "_" text "${text}")
    string(REPLACE "\n" ";" lines "${text}")
    set(n 0)
    foreach(line IN LISTS lines)
      math(EXPR n "${n} + 1")
      if(line MATCHES "${pattern}")
        string(STRIP "${line}" shown)
        list(APPEND offences "${rel}:${n}: ${shown}   (${folder}/ must not include ${CMAKE_MATCH_1}/)")
      endif()
    endforeach()
  endforeach()
endforeach()

if(scanned EQUAL 0)
  message(FATAL_ERROR "layering.cmake: no source files under '${HLLM_SOURCE_DIR}' (storage/, messages/, model/, actors/)")
endif()
list(LENGTH offences count)
if(count GREATER 0)
  string(JOIN "\n  " shown ${offences})
  message(FATAL_ERROR "layering: ${count} forbidden include(s) in ${HLLM_SOURCE_DIR}:\n  ${shown}")
endif()
message(STATUS "layering: ${scanned} files in storage/, messages/, model/, actors/: no forbidden include")
