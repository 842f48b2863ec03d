#include "pathsentry/reflector/reflector.h"

int main(int argc, char** argv) {
  return pathsentry::probe::reflector_main(argc, argv);
}
