#pragma once
namespace cvmsim {
// `cvmsim list`: components, every scenario parameter with its default, and (with --markdown)
// the reference tables of docs/scenario-format.md.
int print_list(bool markdown);
// The scenario step operations (`cvmsim list --steps`).
int print_steps(bool markdown);
// The invariant catalogue as a Markdown table (`cvmsim list --invariants --markdown`).
int print_invariants_markdown();
}  // namespace cvmsim
