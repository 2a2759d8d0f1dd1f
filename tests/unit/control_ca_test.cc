// The provider CA: made once, kept, refused when half of it or a mismatched half is
// there; its server certificates name what they are asked to.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "ca.h"
#include "gateway_key.h"
#include "keys.h"
#include "test_util.h"

namespace ferry::control {
namespace {

using ferry::testing::readFile;
using ferry::testing::TempDir;

TEST(CertificateAuthorityTest, IsMadeOnceWithAPrivateKeyOnlyTheOwnerReads) {
  TempDir dir;
  auto ca = CertificateAuthority::loadOrCreate(dir / "ca");
  ASSERT_TRUE(ca) << ca.status().toString();
  struct stat st {};
  ASSERT_EQ(::stat((dir / "ca/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string pem = readFile(dir / "ca/ca.crt");
  EXPECT_EQ(ca.value()->certificatePem(), pem);
  auto again = CertificateAuthority::loadOrCreate(dir / "ca");
  ASSERT_TRUE(again) << again.status().toString();
  EXPECT_EQ(again.value()->certificatePem(), pem) << "loaded, not made again";
}

TEST(CertificateAuthorityTest, HalfACaOrAMismatchedPairIsRefused) {
  TempDir a, b;
  ASSERT_TRUE(CertificateAuthority::loadOrCreate(a / "ca"));
  ASSERT_TRUE(CertificateAuthority::loadOrCreate(b / "ca"));
  ::unlink((a / "ca/ca.crt").c_str());
  auto half = CertificateAuthority::loadOrCreate(a / "ca");
  ASSERT_FALSE(half);
  EXPECT_NE(half.status().message().find("without ca.crt"), std::string::npos) << half.status().toString();
  std::ofstream(a / "ca/ca.crt") << readFile(b / "ca/ca.crt");
  auto mismatch = CertificateAuthority::loadOrCreate(a / "ca");
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.status().message().find("does not match"), std::string::npos) << mismatch.status().toString();
  std::ofstream(a / "ca/ca.crt") << "not pem";
  EXPECT_EQ(CertificateAuthority::loadOrCreate(a / "ca").status().code(), Code::kCorruption);
}

TEST(CertificateAuthorityTest, SignsOnlyACsrForTheExpectedKey) {
  TempDir dir;
  auto ca = CertificateAuthority::loadOrCreate(dir / "ca").value();
  ferry::testing::GatewayKey key, other;
  std::string fp = publicKeyFingerprint(key.publicPem()).value();
  auto cert = ca->signGateway(key.csr(), fp, "gw-1", 30);
  ASSERT_TRUE(cert) << cert.status().toString();
  EXPECT_NE(cert.value().certificatePem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_GT(cert.value().notAfter, ::time(nullptr) + 29 * 86400);
  EXPECT_EQ(ca->signGateway(other.csr(), fp, "gw-1", 30).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(ca->signGateway("junk", fp, "gw-1", 30).status().code(), Code::kInvalidArgument);
  auto server = ca->issueServer({"localhost", "127.0.0.1", "::1"}, 30);
  ASSERT_TRUE(server) << server.status().toString();
  EXPECT_NE(server.value().privateKeyPem.find("PRIVATE KEY"), std::string::npos);
  EXPECT_FALSE(ca->issueServer({}, 30));
}

}  // namespace
}  // namespace ferry::control
