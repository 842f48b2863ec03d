#include "pathsentry/collector/collector_config.h"

int main(int argc, char** argv) {
  return pathsentry::collector::collector_main(argc, argv);
}
