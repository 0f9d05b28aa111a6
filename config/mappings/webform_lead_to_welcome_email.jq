# webform `form.submitted` -> a welcome e-mail through the e-mail API
# (contract: contracts/email_message.schema.json, which asserts the address's format).
.fields as $f
| {
    to: ($f.email | if type == "string" then trim else . end),
    template: "welcome",
    variables: { name: ($f.name // "there"), form: .form }
  }
