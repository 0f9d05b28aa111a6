# webform `form.submitted` -> a message in the sales team's chat channel
# (contract: contracts/chat_message.schema.json).
.fields as $f
| { text: ("New lead from " + .form + ": " + ($f.name // "someone") + " at " + ($f.company // "an unknown company")) }
