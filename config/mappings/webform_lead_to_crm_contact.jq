# webform `form.submitted` -> a CRM lead (contract: contracts/crm_contact.schema.json,
# which asserts the e-mail's format: an invalid one parks this flow's delivery).
.fields as $f
| {
    email: ($f.email | if type == "string" then trim else . end),
    name: $f.name,
    source: ("webform:" + .form),
    total_spent_minor: 0,
    currency: "EUR",
    status: "lead"
  }
