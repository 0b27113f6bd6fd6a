// Fixture: the wire including an actor header.
#include "actors/actors.hpp"
