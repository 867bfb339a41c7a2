// Transition coverage of a run and of a suite of runs (docs/coverage.md). The machines are
// declared by the models (KVM's, models/kvm/kvm_machines.h, and each registered backend's); a
// run's models count the transitions they performed into the run's sm::Coverage. This file lists
// the machines, writes a Coverage as coverage.json, merges the files of several runs into one and
// prints the report of `cvmsim coverage`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hw/base/state_machine.h"

namespace cvmsim::coverage {

// Every declared machine, in report order.
const std::vector<sm::Machine*>& machines();
sm::Machine* find_machine(const std::string& name);

// A run's coverage: per machine, declared/exercised totals, every exercised transition with its
// count and every undeclared one.
nlohmann::json to_json(const sm::Coverage& cov);
// Adds a coverage.json's counts to `cov`. Throws std::runtime_error naming what is wrong
// (unknown machine, a transition the machine does not declare) for a file that does not fit.
void merge_json(sm::Coverage& cov, const nlohmann::json& j, const std::string& where);

// "coverage: kvm.gfn 9/52, <backend>.<machine> 14/151 transitions; no undeclared" over the machines
// this run touched (nothing touched: "coverage: no transitions recorded").
std::string summary_line(const sm::Coverage& cov);
// The report of `cvmsim coverage`: per backend and machine exercised/declared, the never
// exercised transitions (all of them, or only the successful ones with refusals = false) and
// the undeclared ones.
std::string report(const sm::Coverage& cov, bool list_refusals);
uint64_t undeclared_total(const sm::Coverage& cov);

}  // namespace cvmsim::coverage
