// ferry-console: the appliance's serial console menu (docs/console-menu.md). agetty
// runs it on ttyS0 in place of login; the options point it elsewhere for testing.

#include <unistd.h>

#include <Poco/Net/SSLManager.h>
#include <Poco/Net/RejectCertificateHandler.h>

#include <cstring>
#include <iostream>
#include <string>

#include "console_menu.h"
#include "system_actions.h"

int main(int argc, char** argv) {
  ferry::console::SystemPaths paths;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "ferry-console: " << name << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--etc") {
      paths.etc = value("--etc");
    } else if (a == "--network-dir") {
      paths.networkDir = value("--network-dir");
    } else if (a == "--page") {
      paths.page = value("--page");
    } else if (a == "--systemctl") {
      paths.systemctl = value("--systemctl");
    } else if (a == "--journalctl") {
      paths.journalctl = value("--journalctl");
    } else if (a == "--help" || a == "-h") {
      std::cout << "usage: ferry-console [--etc DIR] [--network-dir DIR] [--page URL] [--systemctl PROG] "
                   "[--journalctl PROG]\n";
      return 0;
    } else {
      std::cerr << "ferry-console: unknown option " << a << " (--help)\n";
      return 2;
    }
  }
  Poco::Net::initializeSSL();
  Poco::Net::Context::Ptr none =
      new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_STRICT);
  Poco::Net::SSLManager::instance().initializeClient(nullptr, new Poco::Net::RejectCertificateHandler(false), none);
  ferry::console::SystemActions actions(paths);
  ferry::console::Terminal term(std::cin, std::cout, ::isatty(STDIN_FILENO) != 0);
  ferry::console::ConsoleMenu menu(term, actions);
  int rc = menu.run();
  Poco::Net::uninitializeSSL();
  return rc;
}
