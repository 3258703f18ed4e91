"""Payment gateway simulator: card and bank-transfer payments, asynchronous settlement, refunds,
chargebacks and reversals, stored payment methods and test cards (see contracts/payments.yaml)."""
