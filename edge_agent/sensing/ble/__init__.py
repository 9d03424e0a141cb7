"""BLE sensing: advert model, decoders, sources (bleak live, serial ESP32 nodes, replay)."""
