"""Setting up the machine around the meter: the CA and trust bundle, client environment."""
