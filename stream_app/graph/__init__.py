"""The supply-chain transaction graph: networkx upkeep (`state`), conversion to a
torch-geometric graph with node features (`pyg`), and node embeddings refreshed off the hot path
(`embeddings`)."""
