"""The payments service: Stripe-compatible payments API on VNPay and VietQR: intents, refunds, events, webhooks, ledger."""
