# install.cmake: what `cmake --install` puts where (binaries, unit files, example config).
#
#   bin/runnerd, bin/runnerctl
#   libexec/runnerd/runner-agent            executor_find_agent() looks in BINDIR/../libexec/runnerd
#                                           (and /usr/libexec/runnerd), so this path is fixed
#   lib/systemd/system/runnerd.service      ExecStart=/usr/bin/runnerd: the unit is for prefix /usr
#   lib/sysusers.d/runnerd.conf             the runnerd user, group and docker membership
#   lib/tmpfiles.d/runnerd.conf             /var/lib/runnerd (0700), /var/cache/runnerd (0750)
#   share/doc/runnerd/runnerd.yaml          the commented example configuration
#   share/doc/runnerd/README.systemd.md     why the unit is as it is
#
# /etc/runnerd/config.yaml is not installed: an install step must never overwrite an edited
# configuration, so packages ship it as a conffile and hand installs copy the example once
# (etc/README.md).
set(RUNNERD_INSTALL_AGENTDIR "libexec/runnerd" CACHE STRING
    "Where runner-agent goes, relative to the prefix (must stay bin/../libexec/runnerd)")

install(TARGETS runnerd runnerctl RUNTIME DESTINATION bin)
install(TARGETS runner-agent RUNTIME DESTINATION ${RUNNERD_INSTALL_AGENTDIR})
install(FILES ${CMAKE_SOURCE_DIR}/systemd/runnerd.service DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/runnerd.sysusers DESTINATION lib/sysusers.d
    RENAME runnerd.conf)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/runnerd.tmpfiles DESTINATION lib/tmpfiles.d
    RENAME runnerd.conf)
install(FILES ${CMAKE_SOURCE_DIR}/etc/runnerd.yaml DESTINATION share/doc/runnerd)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/README.md DESTINATION share/doc/runnerd
    RENAME README.systemd.md)
