"""The merchants service: Onboarding and review of local businesses, storefront catalog, orders, cash-sale records."""
