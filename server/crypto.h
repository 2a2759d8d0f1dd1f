#pragma once
// Secrets of the provider side: password hashes (PBKDF2-HMAC-SHA256, salted, slow on
// purpose) and random tokens (stored only as their SHA-256).

#include <string>

namespace ferry::control {

// "pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX"
std::string hashPassword(const std::string& password);
bool verifyPassword(const std::string& password, const std::string& stored);

// n random bytes from the OS CSPRNG, hex-encoded.
std::string randomHex(size_t n);
std::string sha256Hex(const std::string& data);

constexpr int kPbkdf2Iterations = 210000;  // OWASP's figure for PBKDF2-HMAC-SHA256

}  // namespace ferry::control
