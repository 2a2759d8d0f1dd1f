#pragma once
// Certificate rotation over the channel (DESIGN.md "Control"): before a gateway's
// channel certificate expires the provider asks for a new one.
//
//   certificate.renew {}  ──answer {csr}──▶  the CA signs the CSR (only for the key the
//   gateway activated with), the certificate is recorded, and certificate.install
//   {certificate, not_after, ca_certificate} is queued for the gateway — all in the
//   transaction that finishes the renew request; the gateway installs it and uses it
//   from its next connection.
//
// A renewal is asked when a gateway connects with a certificate that expires within
// the renewal window, and when a connection lives into that window; at most one renew
// request is open per gateway.

#include <Poco/Data/Session.h>

#include <string>

#include "ca.h"
#include "db.h"
#include "outbox.h"

namespace ferry::control {

class Renewal {
 public:
  Renewal(Db& db, Outbox& outbox, CertificateAuthority& ca, int certificateDays)
      : db_(db), outbox_(outbox), ca_(ca), days_(certificateDays) {}

  // Queues certificate.renew for the gateway unless one is open already.
  Status ask(const std::string& gatewayId);
  // Settles certificate.renew (sign, record, queue the install); other ops: nothing.
  Status settle(Poco::Data::Session& ses, const RequestInfo& request);

 private:
  Db& db_;
  Outbox& outbox_;
  CertificateAuthority& ca_;
  int days_;
};

}  // namespace ferry::control
