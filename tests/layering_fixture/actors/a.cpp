// Fixture: lines with ; [ ] and \\ before the include must not shift its line number.
int a[2] = {1, 2}; // [unbalanced
const char* b = "\\";
#include "launch/job_checkpoint.hpp"
#include "model/trainer.hpp"
