"""sundial-dashboard: the REST API and the `/agendamentos` page over ScheduledJob resources."""
