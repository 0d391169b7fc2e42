// Shows which backend version and region answered, straight from /api/health.
const show = (id, text) => { document.getElementById(id).textContent = text; };

async function checkHealth() {
  try {
    const response = await fetch("/api/health", { headers: { accept: "application/json" } });
    const health = await response.json();
    show("health-status", response.ok ? health.status : `error ${response.status}`);
    show("health-version", health.version?.tag || health.version?.id || "unknown");
    show("health-region", `${health.region?.name ?? "?"} (${health.region?.colo || "colo unknown"})`);
  } catch (error) {
    show("health-status", `unreachable: ${error}`);
  }
}

checkHealth();
