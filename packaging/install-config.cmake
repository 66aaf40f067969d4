# Run by `cmake --install`: installs the default config and rules into
# <sysconfdir>/spendguard with schemas_dir rewritten to point at the
# installed schemas, relative to the config's folder (lib/conf.c resolves
# relative paths against it), so the tree stays relocatable with --prefix.
# A file already installed and edited since is kept; the new default is
# installed next to it as <name>.default.
#
# Set by the caller (install(CODE) in CMakeLists.txt): SG_SOURCE_CONFIG_DIR,
# SG_STAGE_DIR (scratch, in the build tree), SG_SYSCONFDIR, SG_DATADIR
# (relative to the prefix, or absolute).

foreach(var SYSCONFDIR DATADIR)
  if(IS_ABSOLUTE "${SG_${var}}")
    set(abs_${var} "${SG_${var}}")
  else()
    set(abs_${var} "${CMAKE_INSTALL_PREFIX}/${SG_${var}}")
  endif()
endforeach()
set(etc_dir "${abs_SYSCONFDIR}/spendguard")
file(RELATIVE_PATH schemas_rel "${etc_dir}" "${abs_DATADIR}/spendguard/schemas")

set(stage "${SG_STAGE_DIR}")
file(MAKE_DIRECTORY "${stage}")
file(READ "${SG_SOURCE_CONFIG_DIR}/spendguard.yaml" yaml)
string(REGEX REPLACE "\nschemas_dir:[^\n]*" "\nschemas_dir: ${schemas_rel}"
       yaml "${yaml}")
if(NOT yaml MATCHES "\nschemas_dir: ${schemas_rel}\n")
  message(FATAL_ERROR "spendguard.yaml has no top-level schemas_dir line")
endif()
file(WRITE "${stage}/spendguard.yaml" "${yaml}")
foreach(name rules.yaml bot_ua.txt dc_cidr.txt)
  configure_file("${SG_SOURCE_CONFIG_DIR}/${name}" "${stage}/${name}" COPYONLY)
endforeach()

foreach(name spendguard.yaml rules.yaml bot_ua.txt dc_cidr.txt)
  set(dest "$ENV{DESTDIR}${etc_dir}/${name}")
  if(EXISTS "${dest}")
    file(READ "${dest}" old)
    file(READ "${stage}/${name}" new)
    if(NOT old STREQUAL new)
      message(STATUS "Keeping edited: ${dest} (new default: ${name}.default)")
      file(INSTALL "${stage}/${name}" DESTINATION "${etc_dir}"
           RENAME "${name}.default")
      continue()
    endif()
  endif()
  file(INSTALL "${stage}/${name}" DESTINATION "${etc_dir}")
endforeach()
