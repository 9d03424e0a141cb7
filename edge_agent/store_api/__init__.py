"""The local store API: what the shopper's phone may ask the box on the store network (issue 16).
Read-only and without personal data; see README "The shopper's phone"."""
