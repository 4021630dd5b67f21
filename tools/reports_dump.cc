// Writes the JSON and JUnit reports of tools::ReportFromBytes(<file>), for
// tools/reports_parse_test.sh, which parses them with Python. Any number of
// triples in one process (one start-up, which under ASan costs ~80 ms).
//
//   reports_dump INPUT JSON_OUT XML_OUT [INPUT JSON_OUT XML_OUT ...]

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tools/report_from_bytes.h"
#include "tools/reports.h"

int main(int argc, char** argv) {
  if (argc < 4 || (argc - 1) % 3 != 0) {
    std::cerr << "usage: reports_dump INPUT JSON_OUT XML_OUT [...]\n";
    return 2;
  }
  for (int i = 1; i < argc; i += 3) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::cerr << "reports_dump: cannot read " << argv[i] << "\n";
      return 1;
    }
    std::stringstream bytes;
    bytes << in.rdbuf();
    const parallel::RunReport report = tools::ReportFromBytes(bytes.str());
    for (const auto& [path, text] :
         {std::make_pair(argv[i + 1], tools::JsonReport(report)),
          std::make_pair(argv[i + 2], tools::JunitReport(report))}) {
      std::ofstream out(path, std::ios::binary);
      out << text;
      if (!out.flush()) {
        std::cerr << "reports_dump: cannot write " << path << "\n";
        return 1;
      }
    }
  }
  return 0;
}
