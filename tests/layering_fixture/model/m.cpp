// Fixture: model/ may include storage/ but not actors/.
#include "actors/x.hpp"
#include "storage/y.hpp"
