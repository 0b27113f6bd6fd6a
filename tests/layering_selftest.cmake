# Checks the checker (ctest layering.detects_every_offence): tests/layering.cmake run on tests/layering_fixture must
# fail and name exactly the forbidden includes planted there, with their line numbers, and nothing allowed.
# Run: cmake -DHLLM_SOURCE_DIR=<repository root> -P tests/layering_selftest.cmake
set(fixture "${HLLM_SOURCE_DIR}/tests/layering_fixture")
execute_process(COMMAND "${CMAKE_COMMAND}" "-DHLLM_SOURCE_DIR=${fixture}" -P "${HLLM_SOURCE_DIR}/tests/layering.cmake"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
set(problems "")
if(rc EQUAL 0)
  list(APPEND problems "the checker passed a tree with forbidden includes (exit ${rc})")
endif()
foreach(expected
    "5 forbidden include(s)"
    "storage/reads_model.hpp:3: #include \"model/npy.hpp\"   (storage/ must not include model/)"
    "storage/reads_model.hpp:4: #  include <launch/job_config.hpp>   (storage/ must not include launch/)"
    "messages/m.hpp:2: #include \"actors/actors.hpp\"   (messages/ must not include actors/)"
    "model/m.cpp:2: #include \"actors/x.hpp\"   (model/ must not include actors/)"
    "actors/a.cpp:4: #include \"launch/job_checkpoint.hpp\"   (actors/ must not include launch/)")
  string(FIND "${all}" "${expected}" at)
  if(at EQUAL -1)
    list(APPEND problems "missing from its report: ${expected}")
  endif()
endforeach()
foreach(allowed "storage/fine.cpp" "storage/y.hpp" "model/trainer.hpp" "storage/error.hpp")
  string(FIND "${all}" "${allowed}" at)
  if(NOT at EQUAL -1)
    list(APPEND problems "reported an allowed include or file: ${allowed}")
  endif()
endforeach()
if(problems)
  string(JOIN "\n  " shown ${problems})
  message(FATAL_ERROR "layering self-test:\n  ${shown}\nchecker output:\n${all}")
endif()
message(STATUS "layering self-test: the checker names all 5 planted offences and nothing else")
