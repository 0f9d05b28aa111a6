# webform `form.submitted` -> a follow-up task for the lead's owner
# (contract: contracts/sales_task.schema.json).
.fields as $f
| {
    owner_id: $f.owner_id,
    title: ("Follow up with " + ($f.company // $f.name // "a new lead")),
    due_in_days: 1,
    notes: ($f.message // "")
  }
