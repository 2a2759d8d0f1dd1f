# The S3 client's tests. Included from tests/CMakeLists.txt.
#
# "rgw" is a CTest fixture: a throwaway single-node Ceph radosgw on loopback, started
# once before the tests that need it and stopped after the last one. The launcher
# writes its endpoint to ${CMAKE_BINARY_DIR}/rgw/endpoint, where the tests read it.
# Without radosgw installed the launcher exits 77 and the S3 tests skip.
add_test(NAME rgw_start
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/rgw/rgw-start.sh ${CMAKE_BINARY_DIR}/rgw)
set_tests_properties(rgw_start PROPERTIES FIXTURES_SETUP rgw TIMEOUT 150 LABELS "integration"
                     SKIP_RETURN_CODE 77)
add_test(NAME rgw_stop
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/rgw/rgw-stop.sh ${CMAKE_BINARY_DIR}/rgw)
set_tests_properties(rgw_stop PROPERTIES FIXTURES_CLEANUP rgw TIMEOUT 60 LABELS "integration")

ferry_test(s3_xml_test SOURCES unit/s3_xml_test.cc LIBS ferry_common LABELS unit)
ferry_test(s3_store_test SOURCES integration/s3_store_test.cc LIBS ferry_common
           LABELS integration FIXTURES rgw)

ferry_test(plugin_s3_test SOURCES integration/plugin_s3_test.cc LIBS ferry_common
           LABELS integration FIXTURES rgw TIMEOUT 600)

# The engine's snapshot, clone, recovery and GC-crash tests again, against radosgw
# instead of file:// stores (tests/lib/test_stores.h picks the store from FERRY_TEST_STORE).
ferry_test(engine_s3_test SOURCES $<TARGET_OBJECTS:engine_store_tests>
           LIBS ferry_engine LABELS integration FIXTURES rgw TIMEOUT 600)
set_property(TEST engine_s3_test APPEND PROPERTY ENVIRONMENT "FERRY_TEST_STORE=s3")

ferry_test(snapshot_fio_s3_test SOURCES $<TARGET_OBJECTS:snapshot_fio_tests> LIBS ferry_common
           LABELS integration FIXTURES rgw)
set_property(TEST snapshot_fio_s3_test APPEND PROPERTY ENVIRONMENT "FERRY_TEST_STORE=s3")
