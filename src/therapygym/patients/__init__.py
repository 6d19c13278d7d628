"""Simulated patients: profiles (CBT case conceptualisations), styles, simulators."""
