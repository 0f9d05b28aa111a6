# Standard Webhooks `invoice.paid` -> an invoice in the accounting API, recorded as
# paid (contract: contracts/accounting_invoice.schema.json). Amounts stay in minor
# units; the currency is upper-cased so the contract can check it.
.data as $i
| {
    reference: $i.invoice_id,
    contact_id: $i.customer_id,
    status: "PAID",
    currency: ($i.currency | if type == "string" then ascii_upcase else . end),
    total_minor: $i.amount_minor,
    paid_at: $i.paid_at
  }
