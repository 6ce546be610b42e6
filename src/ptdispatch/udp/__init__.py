"""UDP over stream transports (PT 3.0 section 1.5): transparent-UDP and STUN modes."""
