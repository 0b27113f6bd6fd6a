# Precompiled <torch/torch.h> for every translation unit that includes torch (issue 14, docs/architecture.md "Build").
# Included by the top CMakeLists.txt after all subdirectories, so it can name targets of any folder; a target that
# is not configured (tests or benches off) is skipped.
#
# One PCH, built once in hllm_model (13 s of parsing, a ~570 MB .gch) and reused by every other torch target with
# REUSE_FROM: a torch TU then loads it in ~2 s instead of parsing torch again. Only torch headers go in: project
# headers change too often, and CAF/JSON TUs pay for template instantiation, not parsing (a torch+CAF PCH made
# actors/job.cpp slower, measured). GCC accepts a PCH only with the same -fpic/-fpie setting, so the executables that
# reuse it compile their torch TUs with -fPIC too (PIC code links into the PIE executable as the static libraries'
# objects already do). Torch-free files of a reusing target skip the PCH: loading it costs them more than it saves.
# -DHLLM_PCH=OFF (or CMAKE_DISABLE_PRECOMPILE_HEADERS=ON) builds without it.
option(HLLM_PCH "Precompile <torch/torch.h> once and reuse it in every torch translation unit" ON)
if(NOT HLLM_PCH OR NOT TARGET hllm_model)
  return()
endif()

target_precompile_headers(hllm_model PRIVATE <torch/torch.h>)

# hllm_reuse_torch_pch(target [torch-free sources...]): the target reuses the PCH; the listed sources skip it.
function(hllm_reuse_torch_pch target)
  if(NOT TARGET ${target})
    return()
  endif()
  target_precompile_headers(${target} REUSE_FROM hllm_model)
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
  if(ARGN)
    set_source_files_properties(${ARGN} TARGET_DIRECTORY ${target} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
  endif()
endfunction()

# The job driver's files and the user trainer include no torch header (trainer.hpp is a pimpl): loading the PCH costs
# each of them 8-12 CPU s for nothing (measured: docs/benchmarks.md, "Build time"). item_encoder.cpp uses torch.
set(_hllm_job_torch_free job.cpp job_placement.cpp job_checkpoints.cpp job_cache.cpp job_results.cpp user_trainer.cpp)
list(TRANSFORM _hllm_job_torch_free PREPEND ${PROJECT_SOURCE_DIR}/actors/)
hllm_reuse_torch_pch(hllm_job ${_hllm_job_torch_free})
hllm_reuse_torch_pch(hllm_stage3)
hllm_reuse_torch_pch(hllm-encode)
hllm_reuse_torch_pch(model_tests)
hllm_reuse_torch_pch(model_encode_tests)
hllm_reuse_torch_pch(model_bench)

# ccache and GCC PCHs (ccache manual, "Precompiled headers"): the consumers name the PCH with -include, and ccache
# must be told that __DATE__/__TIME__ and the PCH's own defines are fine. include_file_mtime/ctime: the .gch is
# always newer than the compilation that reads it started, which would otherwise turn off ccache's direct mode.
if(CMAKE_CXX_COMPILER_LAUNCHER MATCHES "ccache")
  foreach(t hllm_model hllm_job hllm_stage3 hllm-encode model_tests model_encode_tests model_bench)
    if(TARGET ${t})
      set_property(TARGET ${t} PROPERTY CXX_COMPILER_LAUNCHER
        ${CMAKE_COMMAND} -E env
        "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime" ${CMAKE_CXX_COMPILER_LAUNCHER})
    endif()
  endforeach()
endif()
