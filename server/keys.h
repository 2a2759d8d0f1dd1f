#pragma once
// Gateway public keys: parsing, fingerprints, and checking what a gateway signed with
// its private key (activation polls and the CSR step, before it has a certificate).

#include <cstdint>
#include <string>

#include "ferry/status.h"

namespace ferry::control {

// A PEM SubjectPublicKeyInfo (EC P-256 or RSA ≥ 2048); the SHA-256 hex of its DER.
Result<std::string> publicKeyFingerprint(const std::string& pem);

// What a gateway signs to prove it holds the key of an activation request:
// "ferry-activation\n<request id>\n<unix time>".
std::string activationChallenge(const std::string& requestId, int64_t unixTime);

// Verifies a base64 SHA-256 signature of message by the PEM public key.
Status verifySignature(const std::string& publicKeyPem, const std::string& message, const std::string& signatureB64);

}  // namespace ferry::control
