"""Settlements: a bill at a facility paid with an e-card (DESIGN.md section 4, PARTNER_API.md
"Settlement"). `services` holds the business rules, `store` the only SQL, `selectors` the scoped
reads, `api` the partner endpoints and `views` the staff screens."""
