"""Tests of the SMPP session core (smpp_codec.session) and the Trio client (smsgw.smpp)."""
