// Writes the JSON and JUnit reports of tools::ReportFromBytes(<file>), for
// tools/reports_parse_test.sh, which parses them with Python.
//
//   reports_dump INPUT JSON_OUT XML_OUT

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tools/report_from_bytes.h"
#include "tools/reports.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: reports_dump INPUT JSON_OUT XML_OUT\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  const parallel::RunReport report = tools::ReportFromBytes(bytes.str());
  for (const auto& [path, text] :
       {std::make_pair(argv[2], tools::JsonReport(report)),
        std::make_pair(argv[3], tools::JunitReport(report))}) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out.flush()) {
      std::cerr << "reports_dump: cannot write " << path << "\n";
      return 1;
    }
  }
  return 0;
}
