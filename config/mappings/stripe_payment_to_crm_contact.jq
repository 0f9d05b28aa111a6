# Stripe `payment_intent.succeeded` -> CRM contact
# (contract: config/contracts/crm_contact.schema.json).
#
# Input is the whole Stripe event; `.data.object` is the PaymentIntent.
# A contact is keyed by its email, so without `receipt_email` there is nothing to
# send: raise (the event goes to the DLQ with this reason) and never invent one.

def non_empty_string: type == "string" and (trim | length) > 0;

.data.object as $pi
| if ($pi | type) != "object" or $pi.object != "payment_intent" then
    error("data.object is not a PaymentIntent")
  elif ($pi.receipt_email | non_empty_string | not) then
    error("receipt_email is missing: a contact needs an email")
  else
    {
      email: ($pi.receipt_email | trim),
      name: ($pi.shipping.name | if non_empty_string then . else null end),
      source: "stripe_payment",
      total_spent_minor: $pi.amount_received,
      # left as is when not a string, so the contract names the problem
      currency: ($pi.currency | if type == "string" then ascii_upcase else . end),
      status: "customer"
    }
  end
