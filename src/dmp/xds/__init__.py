"""The XDS.b adapter (SOAP): ebRIM metadata and the transactions, through the gate."""
