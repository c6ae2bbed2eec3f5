"""Isolation as a class (issue 28): nothing one tenant configures or one receiver does
delays or stops another tenant's deliveries."""
