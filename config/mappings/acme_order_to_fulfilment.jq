# acme `order.placed` -> a fulfilment order
# (contract: config/contracts/fulfilment_order.schema.json).
#
# The order id is the Idempotency-Key (the flow's idempotency_key), so a provider's
# retry or a replay of the same order never ships it twice.

.order as $o
| if ($o | type) != "object" then error("order is missing")
  elif (($o.items // []) | length) == 0 then error("order has no items: nothing to fulfil")
  else
    {
      order_id: $o.id,
      ship_to: {
        name: $o.customer.name,
        line1: $o.ship_to.line1,
        city: $o.ship_to.city,
        postal_code: $o.ship_to.postal_code,
        country: ($o.ship_to.country | if type == "string" then ascii_upcase else . end)
      },
      lines: [$o.items[] | {sku, quantity}]
    }
  end
