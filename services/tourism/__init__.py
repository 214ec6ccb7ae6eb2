"""The tourism service: Attraction listings, dated availability, hold → pay → confirm bookings, e-tickets, gate check-in."""
