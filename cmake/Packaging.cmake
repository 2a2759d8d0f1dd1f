# Debian packages (cpack -G DEB in the build dir; image/build.sh installs them):
#   ferry-gateway   the appliance: ferry-agent, the nbdkit plugin, ferry-console, systemd units
#   ferry-control   the provider: ferry-control and ferryctl
#   ferry-balancer  the load balancer node/host program
include(GNUInstallDirs)
install(TARGETS ferry-agent ferry-console RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR} COMPONENT gateway)
install(TARGETS nbdkit-ferry-plugin LIBRARY DESTINATION lib/x86_64-linux-gnu/nbdkit/plugins COMPONENT gateway)
install(FILES appliance/dist/ferry-agent.service appliance/dist/ferry-firstboot.service
        DESTINATION lib/systemd/system COMPONENT gateway)
install(PROGRAMS appliance/dist/ferry-firstboot DESTINATION lib/ferry COMPONENT gateway)
install(FILES appliance/dist/serial-getty-ferry-console.conf DESTINATION lib/systemd/system/serial-getty@ttyS0.service.d
        RENAME ferry-console.conf COMPONENT gateway)
install(FILES appliance/dist/agent.properties DESTINATION /etc/ferry COMPONENT gateway)
install(FILES docs/agent.md docs/iscsi.md docs/console-menu.md docs/volume-engine.md DESTINATION share/doc/ferry-gateway COMPONENT gateway)
install(TARGETS ferry-control ferryctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT control)
install(TARGETS ferry-balancer RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR} COMPONENT balancer)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ferry)
set(CPACK_PACKAGE_VENDOR "Ferry")
set(CPACK_PACKAGE_CONTACT "Ferry developers <dev@ferry.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Ferry block-volume storage gateway")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL gateway control balancer)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_GATEWAY_PACKAGE_NAME ferry-gateway)
set(CPACK_DEBIAN_GATEWAY_PACKAGE_DEPENDS "nbdkit, tgt, fuse3, libnbd-bin, e2fsprogs, util-linux")
set(CPACK_DEBIAN_GATEWAY_PACKAGE_CONTROL_EXTRA "${CMAKE_CURRENT_SOURCE_DIR}/appliance/dist/conffiles")
set(CPACK_DEBIAN_CONTROL_PACKAGE_NAME ferry-control)
set(CPACK_DEBIAN_BALANCER_PACKAGE_NAME ferry-balancer)
set(CPACK_DEBIAN_BALANCER_PACKAGE_DEPENDS "iproute2, nftables")
include(CPack)
