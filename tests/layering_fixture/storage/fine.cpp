// Fixture: allowed includes only (a commented-out one is no include).
#include "storage/error.hpp"
// #include "model/npy.hpp"
const char* s = "#include \"actors/x.hpp\"";
