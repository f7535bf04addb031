# Bundled terraform ruleset only (plugin downloads are not possible offline),
# with every rule on: naming, typed/documented variables and outputs, pinned
# module versions, unused declarations, standard module structure.
config {
  call_module_type = "none"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
