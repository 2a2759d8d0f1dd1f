# The control server's tests. Included from tests/CMakeLists.txt.
#
# "pg" is a CTest fixture: a throwaway PostgreSQL on loopback (tests/pg/pg-start.sh),
# whose connection URL the tests read from ${CMAKE_BINARY_DIR}/pg/url. Without
# PostgreSQL installed the launcher exits 77 and the PostgreSQL cases skip.
add_test(NAME pg_start COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pg/pg-start.sh ${CMAKE_BINARY_DIR}/pg)
set_tests_properties(pg_start PROPERTIES FIXTURES_SETUP pg TIMEOUT 120 LABELS "integration" SKIP_RETURN_CODE 77)
add_test(NAME pg_stop COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pg/pg-stop.sh ${CMAKE_BINARY_DIR}/pg)
set_tests_properties(pg_stop PROPERTIES FIXTURES_CLEANUP pg TIMEOUT 60 LABELS "integration")

ferry_test(control_db_test SOURCES unit/control_accounts_test.cc unit/control_gateways_test.cc unit/control_ca_test.cc
           unit/control_outbox_test.cc LIBS ferry_control LABELS unit FIXTURES pg)
ferry_test(tls_socket_test SOURCES unit/tls_socket_test.cc LIBS ferry_control LABELS unit)
ferry_test(control_api_test SOURCES integration/control_api_test.cc LIBS ferry_control
           LABELS integration FIXTURES pg)
ferry_test(ferryctl_test SOURCES integration/ferryctl_test.cc LIBS ferry_control LABELS integration)
ferry_test(channel_test SOURCES integration/channel_test.cc LIBS ferry_control LABELS integration)
ferry_test(requests_test SOURCES integration/requests_test.cc LIBS ferry_control LABELS integration FIXTURES pg)
ferry_test(farm_test SOURCES integration/farm_test.cc LIBS ferry_control LABELS integration FIXTURES pg)
ferry_test(console_test SOURCES integration/console_test.cc LIBS ferry_control LABELS integration TIMEOUT 600)
target_compile_definitions(console_test PRIVATE FERRY_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
ferry_test_objects(agent_recovery_tests SOURCES integration/agent_recovery_test.cc LIBS ferry_agent ferry_control)
ferry_test(agent_test SOURCES integration/agent_test.cc integration/agent_limits_test.cc
           $<TARGET_OBJECTS:agent_recovery_tests> LIBS ferry_agent ferry_control
           LABELS integration TIMEOUT 600)
# The disaster-recovery path end to end again, the gateways' stores in radosgw.
ferry_test(agent_s3_test SOURCES $<TARGET_OBJECTS:agent_recovery_tests> LIBS ferry_agent ferry_control
           LABELS integration FIXTURES rgw TIMEOUT 600)
set_property(TEST agent_s3_test APPEND PROPERTY ENVIRONMENT "FERRY_TEST_STORE=s3")
ferry_test(agent_iscsi_test SOURCES integration/agent_iscsi_test.cc LIBS ferry_agent ferry_control
           LABELS integration TIMEOUT 600)
ferry_test(iscsi_conformance_test SOURCES integration/iscsi_conformance_test.cc LIBS ferry_agent ferry_control
           LABELS integration TIMEOUT 900)
ferry_test(console_menu_test SOURCES integration/console_menu_test.cc LIBS ferry_console ferry_control
           LABELS integration TIMEOUT 300)
# The appliance image built and booted under qemu: minutes, root, Debian's mirror.
add_test(NAME image_boot_test COMMAND bash ${CMAKE_SOURCE_DIR}/bench/image_boot.sh ${CMAKE_BINARY_DIR}/image)
set_tests_properties(image_boot_test PROPERTIES LABELS "slow" TIMEOUT 2400)
