#!/usr/bin/env python3
"""Seeds a stopped gpudock's database with N instances (20 per node, on
listed online nodes, owned by the admin) for the list benchmarks.
Usage: seed_instances.py DB N"""
import sqlite3, sys

db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
c.execute("PRAGMA foreign_keys=ON")
cur = c.cursor()
cur.execute("INSERT INTO images (name, address, created_at, updated_at) VALUES ('seed-image', 'busybox:latest', 0, 0)")
image = cur.lastrowid
cur.execute("INSERT INTO specs (name, gpu_model, gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at)"
            " VALUES ('seed-4090x1', 'RTX 4090', 1, 2, 8, 50, 50, 0, 0)")
spec = cur.lastrowid
admin = cur.execute("SELECT id FROM users WHERE username = 'admin'").fetchone()[0]
node = None
for k in range(n):
    if k % 20 == 0:
        cur.execute("INSERT INTO nodes (name, public_ip, private_ip, gpu_name, gpu_count, cpu_cores, memory_gb, system_disk_gb,"
                    " data_disk_gb, status, created_at, updated_at) VALUES (?, '10.0.0.1', '10.0.0.1', 'NVIDIA GeForce RTX 4090',"
                    " 32, 256, 2048, 8000, 20000, 'online', 0, 0)", (f"seed-node-{k // 20}",))
        node = cur.lastrowid
    cur.execute("INSERT INTO instances (name, image_id, spec_id, node_id, user_id, status, container_id, gpu_indices, gpu_count,"
                " cpu_cores, memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at, container_name, volume_name)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, 1, 2, 8, 50, 50, 1767225600, 1767225600, ?, ?)",
                (f"seed-{k}", image, spec, node, admin, f"{k:064x}", f"[{k % 20}]", f"seed-c-{k}", f"seed-c-{k}-data"))
c.commit()
