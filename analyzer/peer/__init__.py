"""Two captures of one path (`wsadiag analyze CLIENT --peer SERVER`): conversations lined up across
the capture points, the clocks aligned, each packet's fate between the points.

results = analyze_pair("client.pcap", "server.pcap", rules)   # one CaptureResult per capture

The entry point lives in analyzer.peer.path and is not imported here: the rule compiler imports
analyzer.peer.fates on every start-up, and this package must stay light to import.
"""
