//! Inbound webhook signature schemes. (Being written: see the interface in the task.)
