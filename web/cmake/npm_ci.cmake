cmake_minimum_required(VERSION 3.25)
# Runs `npm ci` in DIR when node_modules is missing or was installed from another lockfile
# (node_modules/.pathsentry-lock.sha256 records the lockfile it came from), then refreshes
# STAMP (in the build tree) only when its content changes, so the bundle rebuilds only then.
# cmake -DNPM=npm -DDIR=<web> -DSTAMP=<file> -P npm_ci.cmake
file(SHA256 ${DIR}/package-lock.json lock_hash)
set(marker ${DIR}/node_modules/.pathsentry-lock.sha256)
set(installed "")
if(EXISTS ${marker})
  file(READ ${marker} installed)
endif()
if(NOT installed STREQUAL lock_hash OR NOT EXISTS ${DIR}/node_modules/esbuild/package.json
   OR NOT EXISTS ${DIR}/node_modules/uplot/package.json)
  message(STATUS "web: npm ci (node_modules missing or from another package-lock.json)")
  execute_process(COMMAND ${NPM} ci --no-audit --no-fund --loglevel=error
                  WORKING_DIRECTORY ${DIR} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "web: `npm ci` failed in ${DIR} (exit ${rc}): it needs the npm registry "
                        "and the packages scripts/deps.sh installs (nodejs, npm)")
  endif()
  file(WRITE ${marker} "${lock_hash}")
endif()
set(old "")
if(EXISTS ${STAMP})
  file(READ ${STAMP} old)
endif()
if(NOT old STREQUAL lock_hash)
  file(WRITE ${STAMP} "${lock_hash}")
endif()
