#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "guest_test_util.h"
#include "models/guest/trace_program.h"
#include "models/guest/trace_reader.h"
#include "models/guest/workload.h"

using namespace cvmsim;
using cvmsim::test::drain;
using cvmsim::test::TempFile;
using Kind = TraceRecord::Kind;

namespace {

std::vector<TraceRecord> read_all(const std::string& path, TraceFormat fmt = TraceFormat::kAuto,
                                  bool fetches = false, std::string* error = nullptr,
                                  TraceFormat* detected = nullptr) {
  TraceReader r(path, fmt, fetches);
  std::vector<TraceRecord> v;
  TraceRecord rec;
  TraceReader::Status st = TraceReader::Status::kError;
  if (r.ok())
    while ((st = r.next(rec)) == TraceReader::Status::kRecord) v.push_back(rec);
  if (error) *error = r.error();
  if (detected) *detected = r.format();
  if (!error) REQUIRE(r.ok());
  if (!error) REQUIRE(st == TraceReader::Status::kEnd);
  return v;
}

std::string first_error(const std::string& contents, TraceFormat fmt = TraceFormat::kAuto) {
  TempFile f(contents, "bad");
  const TraceSummary sum = validate_trace(f.path(), fmt);
  // Report the message without the temp path so tests can compare it.
  const std::string& e = sum.error;
  return e.rfind(f.path(), 0) == 0 ? "<f>" + e.substr(f.path().size()) : e;
}

WorkloadSpec trace_spec(const std::string& path) {
  WorkloadSpec s;
  s.kind = WorkloadKind::kTrace;
  s.trace_path = path;
  s.base = Gpa(0x8000'0000);
  s.footprint_bytes = 1 << 20;
  s.ops = 0;
  return s;
}

std::unique_ptr<GuestProgram> make(const WorkloadSpec& s) {
  auto r = make_workload(s, Rng(1));
  INFO(r.error);
  REQUIRE(r.ok());
  return std::move(r.program);
}

}  // namespace

TEST_CASE("cvmsim format: every op with comments and blank lines in hex and decimal") {
  TempFile f(
      "# a cvmsim trace\n"
      "\n"
      "R 0x1000 8\n"
      "W 4096 4   # decimal address, pattern from the spec\n"
      "w 0x2000 0x10 0xdeadbeef\r\n"
      "  C 500\n"
      "F\n"
      "r\t0X3000\t64\n");
  TraceFormat detected{};
  std::string err;
  auto recs = read_all(f.path(), TraceFormat::kAuto, false, &err, &detected);
  REQUIRE(err.empty());
  CHECK(detected == TraceFormat::kCvmsim);
  REQUIRE(recs.size() == 6);
  CHECK((recs[0].kind == Kind::kLoad && recs[0].addr == 0x1000 && recs[0].size == 8));
  CHECK((recs[1].kind == Kind::kStore && recs[1].addr == 4096 && recs[1].size == 4 &&
         !recs[1].has_value));
  CHECK((recs[2].kind == Kind::kStore && recs[2].addr == 0x2000 && recs[2].size == 16 &&
         recs[2].has_value && recs[2].value == 0xdeadbeef));
  CHECK((recs[3].kind == Kind::kCompute && recs[3].cycles == 500));
  CHECK(recs[4].kind == Kind::kFence);
  CHECK((recs[5].kind == Kind::kLoad && recs[5].addr == 0x3000 && recs[5].size == 64));
}

TEST_CASE("lackey format: banners and I records skipped and M is a load then a store") {
  TempFile f(
      "==4242== hand-written lackey-style output\n"
      "==4242== \n"
      "I  04001100,3\n"
      " S 1ffefffd08,8\n"
      "I  04001103,5\n"
      " L 04022e70,4\n"
      " M 0421c7f0,2\n"
      "--4242-- a warning line\n"
      "SB 04001100\n"
      "==4242== \n");
  TraceFormat detected{};
  std::string err;
  auto recs = read_all(f.path(), TraceFormat::kAuto, false, &err, &detected);
  REQUIRE(err.empty());
  CHECK(detected == TraceFormat::kLackey);
  REQUIRE(recs.size() == 4);
  CHECK((recs[0].kind == Kind::kStore && recs[0].addr == 0x1ffefffd08 && recs[0].size == 8));
  CHECK((recs[1].kind == Kind::kLoad && recs[1].addr == 0x04022e70 && recs[1].size == 4));
  CHECK((recs[2].kind == Kind::kLoad && recs[2].addr == 0x0421c7f0 && recs[2].size == 2));
  CHECK((recs[3].kind == Kind::kStore && recs[3].addr == 0x0421c7f0 && recs[3].size == 2));

  SECTION("with instruction fetches, I records are loads") {
    auto all = read_all(f.path(), TraceFormat::kLackey, true);
    REQUIRE(all.size() == 6);
    CHECK((all[0].kind == Kind::kLoad && all[0].addr == 0x04001100 && all[0].size == 3));
    CHECK((all[2].kind == Kind::kLoad && all[2].addr == 0x04001103 && all[2].size == 5));
  }
}

TEST_CASE("auto-detection looks at the first op line") {
  TempFile lackey("# comment first\n\nI  00400000,4\n L 00600000,8\n");
  TempFile cvm("\n# comment\nR 0x10 8\n");
  TraceFormat d{};
  std::string err;
  read_all(lackey.path(), TraceFormat::kAuto, false, &err, &d);
  CHECK(d == TraceFormat::kLackey);
  read_all(cvm.path(), TraceFormat::kAuto, false, &err, &d);
  CHECK(d == TraceFormat::kCvmsim);
  // Forcing the wrong format gives a line-numbered error, not silence.
  CHECK(first_error("I  00400000,4\n", TraceFormat::kCvmsim) ==
        "<f>:1: unknown operation 'I' (expected R, W, C or F)");
  CHECK(first_error("R 0x10 8\n", TraceFormat::kLackey) ==
        "<f>:1: unknown lackey record 'R' (expected I, L, S or M)");
}

TEST_CASE("malformed lines are reported with their line number") {
  const std::string ok = "# header\nR 0x10 8\n";  // the bad line is line 3
  CHECK(first_error(ok + "R 0x10\n") == "<f>:3: expected a size after the address");
  CHECK(first_error(ok + "W\n") == "<f>:3: expected an address after 'W'");
  CHECK(first_error(ok + "X 1 2\n") == "<f>:3: unknown operation 'X' (expected R, W, C or F)");
  CHECK(first_error(ok + "RW 1 2\n") == "<f>:3: unknown operation 'RW' (expected R, W, C or F)");
  CHECK(first_error(ok + "R 0xzz 8\n") ==
        "<f>:3: bad address '0xzz': expected hex (0x...) or decimal");
  CHECK(first_error(ok + "R 12abc 8\n") ==
        "<f>:3: bad address '12abc': expected hex (0x...) or decimal");
  CHECK(first_error(ok + "R 0x1ffffffffffffffff 8\n") ==
        "<f>:3: address '0x1ffffffffffffffff' does not fit in 64 bits");
  CHECK(first_error(ok + "R 0x10 0\n") == "<f>:3: size '0' must be a number in 1..4096");
  CHECK(first_error(ok + "R 0x10 4097\n") == "<f>:3: size '4097' must be a number in 1..4096");
  CHECK(first_error(ok + "W 0x10 8 zz\n") ==
        "<f>:3: bad value 'zz': expected hex (0x...) or decimal");
  CHECK(first_error(ok + "C\n") == "<f>:3: expected a cycle count after 'C'");
  CHECK(first_error(ok + "C -5\n") ==
        "<f>:3: bad cycle count '-5': expected hex (0x...) or decimal");
  CHECK(first_error(ok + "F now\n") == "<f>:3: unexpected 'now' at the end of the line");
  CHECK(first_error(ok + "R 0x10 8 9\n") == "<f>:3: unexpected '9' at the end of the line");

  const std::string lk = "==1== x\n L 0400,8\n";  // bad line is line 3
  CHECK(first_error(lk + " L 04222cac\n") == "<f>:3: expected ',' and a size after the address");
  CHECK(first_error(lk + " L 04222cac,\n") == "<f>:3: expected a size after ','");
  CHECK(first_error(lk + " L ,8\n") == "<f>:3: expected an address after 'L'");
  CHECK(first_error(lk + " L 0422zz,8\n") == "<f>:3: bad address '0422zz': expected hex");
  CHECK(first_error(lk + " L 0400,0\n") == "<f>:3: size '0' must be a number in 1..4096");
  CHECK(first_error(lk + " L 0400,8 x\n") == "<f>:3: unexpected 'x' at the end of the line");
  CHECK(first_error(lk + " Q 0400,8\n") ==
        "<f>:3: unknown lackey record 'Q' (expected I, L, S or M)");
  CHECK(first_error(lk + "hello from the program\n") ==
        "<f>:3: unknown lackey record 'hello' (expected I, L, S or M)");
}

TEST_CASE("trace replay folds addresses into the footprint and keeps page offsets") {
  TempFile f(
      "==7== x\n"
      " L 7ff000398,8\n"  // 0x7ff000398 mod 1 MiB = 0x398
      " S 00000010,4\n"
      " M 04222cac,4\n");
  auto s = trace_spec(f.path());
  s.store_pattern = PatternKind::kValue;
  s.store_value = 0xabc;
  s.verify_loads = true;
  auto p = make(s);
  CHECK(p->expected_ops() == 4);
  auto ops = drain(*p);
  REQUIRE(ops.size() == 4);
  CHECK((ops[0].kind == OpKind::kLoad && ops[0].gpa == s.base + 0x398 && ops[0].size == 8 &&
         ops[0].verify && ops[0].value == 0xabc));
  CHECK((ops[1].kind == OpKind::kStore && ops[1].gpa == s.base + 0x10 && ops[1].size == 4 &&
         ops[1].value == 0xabc && ops[1].pattern == PatternKind::kValue));
  CHECK((ops[2].kind == OpKind::kLoad && ops[2].gpa == s.base + 0x22cac));
  CHECK((ops[3].kind == OpKind::kStore && ops[3].gpa == s.base + 0x22cac));

  SECTION("a footprint that is not a page multiple folds modulo its whole pages") {
    s.footprint_bytes = 3 * 4096 + 100;  // fold length 12 KiB
    auto ops2 = drain(*make(s));
    CHECK(ops2[0].gpa == s.base + (0x7ff000398ull % (3 * 4096)));
    CHECK(ops2[0].gpa.page_offset() == 0x398);
  }
}

TEST_CASE("an access crossing the footprint end is split and wraps to the start") {
  TempFile f("R 4092 8\nW 0x1ffe 4 0x55\n");  // footprint 4 KiB: 0x1ffe folds to 0xffe
  auto s = trace_spec(f.path());
  s.footprint_bytes = 4096;
  auto p = make(s);
  CHECK(p->expected_ops() == 4);
  auto ops = drain(*p);
  REQUIRE(ops.size() == 4);
  CHECK((ops[0].kind == OpKind::kLoad && ops[0].gpa == s.base + 4092 && ops[0].size == 4));
  CHECK((ops[1].kind == OpKind::kLoad && ops[1].gpa == s.base + 0 && ops[1].size == 4));
  CHECK((ops[2].kind == OpKind::kStore && ops[2].gpa == s.base + 0xffe && ops[2].size == 2 &&
         ops[2].value == 0x55 && ops[2].pattern == PatternKind::kValue));
  CHECK((ops[3].kind == OpKind::kStore && ops[3].gpa == s.base + 0 && ops[3].size == 2));

  SECTION("a tiny footprint splits into many pieces") {
    s.footprint_bytes = 16;
    TempFile g("R 8 40\n");
    s.trace_path = g.path();
    auto q = make(s);
    CHECK(q->expected_ops() == 3);
    auto pieces = drain(*q);
    REQUIRE(pieces.size() == 3);
    CHECK((pieces[0].gpa == s.base + 8 && pieces[0].size == 8));
    CHECK((pieces[1].gpa == s.base + 0 && pieces[1].size == 16));
    CHECK((pieces[2].gpa == s.base + 0 && pieces[2].size == 16));
    uint32_t total = 0;
    for (const auto& op : pieces) total += op.size;
    CHECK(total == 40);
  }
}

TEST_CASE("trace compute and fence lines and compute_cycles_between") {
  TempFile f("R 0 8\nC 100\nF\nW 8 8\nR 16 8\n");
  auto s = trace_spec(f.path());
  s.compute_cycles_between = 7;
  auto p = make(s);
  auto ops = drain(*p);
  std::vector<OpKind> kinds;
  for (const auto& op : ops) kinds.push_back(op.kind);
  CHECK(kinds == std::vector<OpKind>{OpKind::kLoad, OpKind::kCompute, OpKind::kFence,
                                     OpKind::kCompute, OpKind::kStore, OpKind::kCompute,
                                     OpKind::kLoad});
  CHECK(ops[1].cycles == 100);
  CHECK(ops[3].cycles == 7);
  CHECK(p->expected_ops() == ops.size());
}

TEST_CASE("trace repeat and the ops limit") {
  TempFile f("R 0 8\nW 8 8\nC 3\n");
  auto s = trace_spec(f.path());
  SECTION("repeat 3 replays the file three times") {
    s.trace_repeat = 3;
    auto p = make(s);
    auto ops = drain(*p);
    CHECK(ops.size() == 9);
    CHECK(p->expected_ops() == 9);
    CHECK((ops[3].kind == OpKind::kLoad && ops[3].gpa == s.base));
  }
  SECTION("repeat 0 loops until ops memory ops") {
    s.trace_repeat = 0;
    s.ops = 5;
    auto ops = drain(*make(s));
    int mem = 0;
    for (const auto& op : ops) mem += op.kind != OpKind::kCompute;
    CHECK(mem == 5);
    CHECK(ops.back().kind == OpKind::kLoad);  // stops right after the fifth memory op
  }
  SECTION("ops cuts a single pass short") {
    s.ops = 1;
    CHECK(drain(*make(s)).size() == 1);
  }
}

TEST_CASE("trace files with nothing to replay or that cannot be read are rejected") {
  TempFile empty("# nothing here\n\n");
  auto r = make_workload(trace_spec(empty.path()), Rng(1));
  CHECK_FALSE(r.ok());
  CHECK(r.error == "trace_path: " + empty.path() + ": contains no loads or stores");

  TempFile fetches_only("==1== x\nI  0400,4\n");
  r = make_workload(trace_spec(fetches_only.path()), Rng(1));
  CHECK_FALSE(r.ok());
  CHECK(r.error.find("trace_instr_fetches") != std::string::npos);
  auto s = trace_spec(fetches_only.path());
  s.trace_instr_fetches = true;
  CHECK(make_workload(s, Rng(1)).ok());

  r = make_workload(trace_spec("/nonexistent/dir/t.trace"), Rng(1));
  CHECK(r.error == "trace_path: /nonexistent/dir/t.trace: cannot open: no such file");
  r = make_workload(trace_spec(std::filesystem::temp_directory_path().string()), Rng(1));
  CHECK(r.error.find("not a regular file") != std::string::npos);

  TempFile bad("R 0 8\nR 8 8\nR 16\n");
  r = make_workload(trace_spec(bad.path()), Rng(1));
  CHECK(r.error == "trace_path: " + bad.path() + ":3: expected a size after the address");
}

TEST_CASE("without up-front validation a bad line ends the run with an error") {
  TempFile bad("R 0 8\nW 8 8\nbogus\nR 16 8\n");
  auto s = trace_spec(bad.path());
  s.trace_validate = false;
  auto r = make_workload(s, Rng(1));
  REQUIRE(r.ok());
  auto ops = drain(*r.program);
  CHECK(ops.size() == 2);
  auto* tp = dynamic_cast<TraceProgram*>(r.program.get());
  REQUIRE(tp);
  CHECK(tp->error() == bad.path() + ":3: unknown operation 'bogus' (expected R, W, C or F)");
  // What the vCPU sees: the error through the GuestProgram interface, and the program stays ended.
  const GuestProgram& as_program = *r.program;
  CHECK(as_program.error() == bad.path() + ":3: unknown operation 'bogus' (expected R, W, C or F)");
  GuestOp op;
  CHECK_FALSE(r.program->next(op));
}

TEST_CASE("a program that ends normally reports no error") {
  TempFile good("R 0 8\nW 8 8\n");
  auto r = make_workload(trace_spec(good.path()), Rng(1));
  REQUIRE(r.ok());
  drain(*r.program);
  CHECK(r.program->error().empty());
  WorkloadSpec s;
  s.kind = WorkloadKind::kUniform;
  s.ops = 10;
  auto u = make_workload(s, Rng(1));
  REQUIRE(u.ok());
  CHECK(drain(*u.program).size() == 10);
  CHECK(u.program->error().empty());  // the GuestProgram default
}

TEST_CASE("the sample traces in scenarios/traces parse") {
  const std::string dir = std::string(CVMSIM_SOURCE_DIR) + "/scenarios/traces/";
  const TraceSummary c = validate_trace(dir + "example_cvmsim.trace");
  INFO(c.error);
  CHECK(c.error.empty());
  CHECK(c.format == TraceFormat::kCvmsim);
  CHECK(c.loads > 0);
  CHECK(c.stores > 0);
  CHECK(c.computes > 0);
  CHECK(c.fences > 0);

  const TraceSummary l = validate_trace(dir + "example_lackey.trace");
  INFO(l.error);
  CHECK(l.error.empty());
  CHECK(l.format == TraceFormat::kLackey);
  CHECK(l.loads > 0);
  CHECK(l.stores > 0);

  for (const char* name : {"example_cvmsim.trace", "example_lackey.trace"}) {
    auto s = trace_spec(dir + name);
    s.footprint_bytes = 64 * 1024;
    auto p = make(s);
    const uint64_t expected = p->expected_ops();
    auto ops = drain(*p);
    CHECK(ops.size() == expected);
    for (const auto& op : ops)
      if (op.kind == OpKind::kLoad || op.kind == OpKind::kStore)
        REQUIRE(op.gpa - s.base + op.size <= s.footprint_bytes);
  }
}

TEST_CASE("the reader handles chunk boundaries and long lines and a missing final newline") {
  std::string text = "# " + std::string(600'000, 'x') + "\n";  // longer than one read chunk
  for (int i = 0; i < 100'000; ++i) text += "R " + std::to_string(i * 8) + " 8\n";
  text += "W 0x10 4";  // no final newline
  TempFile f(text);
  auto recs = read_all(f.path());
  REQUIRE(recs.size() == 100'001);
  for (int i = 0; i < 100'000; ++i) {
    REQUIRE(recs[i].kind == Kind::kLoad);
    REQUIRE(recs[i].addr == static_cast<uint64_t>(i) * 8);
  }
  CHECK((recs.back().kind == Kind::kStore && recs.back().addr == 0x10 && recs.back().size == 4));

  // A file without newlines is refused instead of being buffered whole.
  CHECK(first_error(std::string(5 * 1024 * 1024, 'z')) ==
        "<f>:1: line longer than 4 MiB (not a text trace?)");
}
