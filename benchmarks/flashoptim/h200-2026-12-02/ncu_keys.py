"""Print the key Nsight Compute figures of each details CSV given (one kernel each), side by side.

python3 ncu_keys.py a_details.csv [b_details.csv ...]   (from `ncu -i X.ncu-rep --page details --csv`)
"""

import csv
import sys

KEYS = [
    "Duration",
    "DRAM Throughput",
    "Memory Throughput",
    "Compute (SM) Throughput",
    "Executed Ipc Active",
    "Issue Slots Busy",
    "Issued Warp Per Scheduler",
    "No Eligible",
    "Active Warps Per Scheduler",
    "Eligible Warps Per Scheduler",
    "Warp Cycles Per Issued Instruction",
    "Achieved Occupancy",
    "Theoretical Occupancy",
    "Registers Per Thread",
    "Executed Instructions",
    "Block Limit Registers",
    "Achieved Active Warps Per SM",
    "L2 Hit Rate",
    "L1/TEX Hit Rate",
    "Mem Busy",
    "Max Bandwidth",
    "Mem Pipes Busy",
    "SM Busy",
    "Dynamic Shared Memory Per Block",
    "Static Shared Memory Per Block",
    "Waves Per SM",
]


def main(paths: list[str]) -> None:
    cols = []
    for path in paths:
        d: dict[str, str] = {}
        try:
            with open(path) as f:
                for row in csv.DictReader(f):
                    d[row["Metric Name"]] = f"{row['Metric Value']} {row['Metric Unit']}".strip()
        except Exception as e:  # a missing or empty CSV prints as dashes, with the reason
            d["error"] = repr(e)
        cols.append(d)
    for k in [*KEYS, "error"]:
        print(f"{k:40s}", " | ".join(f"{c.get(k, '-'):>22s}" for c in cols))


if __name__ == "__main__":
    main(sys.argv[1:])
