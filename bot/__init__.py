"""checkin-bot: text HERE to a Twilio number, get your Q-Flow VirtualQ ticket back."""
