// Fixture of tests/layering_selftest.cmake: a storage file that includes from model/ and launch/.
#include <string>
#include "model/npy.hpp"
  #  include <launch/job_config.hpp>
#include "storage/error.hpp"
