# A record of the legacy orders API (polled: no webhooks) -> a fulfilment order
# (contract: config/contracts/fulfilment_order.schema.json).
#
# Input is one record of a page (`records = ".orders"`); each version of an order
# (`updated_at`) is its own event, so a changed order is fulfilled again under its
# own Idempotency-Key and an unchanged one never is.

. as $o
| if ($o | type) != "object" then error("record is not an object")
  elif (($o.order_lines // []) | length) == 0 then error("order has no lines: nothing to fulfil")
  else
    {
      order_id: $o.id,
      ship_to: {
        name: $o.customer.name,
        line1: $o.delivery_address.street,
        city: $o.delivery_address.town,
        postal_code: $o.delivery_address.zip,
        country: ($o.delivery_address.country_code | if type == "string" then ascii_upcase else . end)
      },
      lines: [$o.order_lines[] | {sku: .article, quantity: .qty}]
    }
  end
