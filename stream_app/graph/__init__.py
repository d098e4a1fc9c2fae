"""The supply-chain transaction graph: networkx upkeep with the lots' custody ledger (`state`),
the facts that ledger and the lanes show per transaction (`custody`, `lanes`), conversion to a
torch-geometric graph with node features (`pyg`), and node embeddings refreshed off the hot path
(`embeddings`)."""
