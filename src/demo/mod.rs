//! Local Redis processes for the demo mode and the test harness: a throwaway Redis Cluster or standalone servers on loopback.
